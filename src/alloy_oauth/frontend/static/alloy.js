/**
 * alloy-oauth browser SDK: connect your users' accounts from a web page.
 *
 * Served by the alloy-oauth server at /sdk/alloy.js (a classic script that defines the global
 * `alloy`) and /sdk/alloy.mjs (the same as an ES module: `import alloy from '…/sdk/alloy.mjs'`).
 * No dependencies.
 *
 *   await alloy.authenticate(jwt);           // from your backend: GET /users/{userId}/token
 *   alloy.connect('notion', {
 *     onSuccess: (connectionId) => { … },    // exactly one of the three is called
 *     onError: (error) => { … },             // error.code, error.message
 *     onClose: () => { … },
 *   });
 *
 * The connection runs in a popup on the server's hosted page, which reports back with
 * postMessage to this page's exact origin; this page accepts messages from the server's origin
 * only. Should the popup lose its link to this page (a provider's Cross-Origin-Opener-Policy),
 * the SDK asks the server for the outcome instead. `mode: 'redirect'` runs the flow as a
 * full-page redirect; call `alloy.redirectResult()` on the page it returns to.
 */
var alloy = (function () {
  'use strict';

  /** The alloy-oauth server that served this script. */
  const SERVER = "__ALLOY_SERVER__";
  const SERVER_ORIGIN = new URL(SERVER).origin;
  const VERSION = '1.0.0';
  const POLL_MS = 2000;
  const CLOSED_CHECK_MS = 400;
  const CLOSE_GRACE_MS = 1500;
  // A popup that "closes" this soon after the user went to the provider was most likely cut
  // off by the provider's COOP header, not closed: keep asking the server until the attempt ends.
  const SEVERED_WITHIN_S = 3;

  /**
   * An error reported to `onError` (or thrown by `authenticate`).
   * `code` is a stable snake_case string: `access_denied`, `invalid_token`, `popup_blocked`,
   * `connector_not_configured`, `network_error`, `expired`, a provider's OAuth error code, …
   */
  class AlloyError extends Error {
    /**
     * @param {string} code
     * @param {string} message
     */
    constructor(code, message) {
      super(message);
      this.name = 'AlloyError';
      /** @type {string} */
      this.code = code;
    }
  }

  /**
   * @typedef {Object} ConnectOptions
   * @property {(connectionId: string) => void} [onSuccess] The account is connected.
   * @property {(error: AlloyError) => void} [onError] It failed, or the user denied access.
   * @property {() => void} [onClose] The user closed the window or pressed Cancel.
   * @property {Object<string, string>} [data] Values for the connector's inputs (a subdomain…),
   *   shown prefilled on the connect page.
   * @property {string[]} [scopes] Scopes to ask for instead of the connector's defaults.
   * @property {string} [authConfigId] Use this account's own OAuth app (POST /auth-configs).
   * @property {'popup'|'redirect'} [mode] `popup` (default) or a full-page `redirect`.
   * @property {string} [returnUrl] Redirect mode: the page to come back to (default: this one).
   * @property {number} [pollIntervalMs] How often to ask the server while the popup is open.
   */

  /**
   * @typedef {Object} ConnectResult
   * @property {'connected'|'error'|'closed'|'redirecting'} status
   * @property {string} [connectionId] When connected.
   * @property {AlloyError} [error] When status is `error`.
   * @property {string} [sessionId]
   */

  /**
   * @typedef {Object} ManageOptions
   * @property {(connectionId: string) => void} [onDisconnect]
   * @property {(connectionId: string) => void} [onReconnect] Same ID, fresh credentials.
   * @property {() => void} [onClose] The page was closed.
   * @property {(error: AlloyError) => void} [onError]
   * @property {'popup'|'redirect'} [mode]
   * @property {string} [returnUrl]
   */

  /** @type {string|null} */
  let token = null;

  function decodeClaims(jwt) {
    const parts = jwt.split('.');
    if (parts.length !== 3) throw new Error('not a JWT');
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  /**
   * Use this JWT (from your backend's `GET /users/{userId}/token`) for the next calls.
   * Checks its shape only; the server checks the rest when you connect.
   * @param {string} jwt
   * @returns {Promise<{userId: string, expiresAt: Date}>}
   */
  async function authenticate(jwt) {
    let claims;
    try {
      claims = typeof jwt === 'string' ? decodeClaims(jwt) : null;
    } catch (e) {
      claims = null;
    }
    const audience = claims && (Array.isArray(claims.aud) ? claims.aud : [claims.aud]);
    if (!claims || typeof claims.sub !== 'string' || !audience.includes('alloy-sdk')) {
      throw new AlloyError('invalid_token',
        'alloy.authenticate() needs the JWT your backend got from GET /users/{userId}/token.');
    }
    token = jwt;
    return { userId: claims.sub, expiresAt: new Date(claims.exp * 1000) };
  }

  /** Forget the JWT. */
  function signOut() {
    token = null;
  }

  async function call(method, path, body) {
    if (!token) {
      throw new AlloyError('not_authenticated', 'Call alloy.authenticate(jwt) first.');
    }
    const headers = { Authorization: 'Bearer ' + token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(SERVER + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      throw new AlloyError('network_error', 'The alloy-oauth server at ' + SERVER +
        ' could not be reached.');
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (e) {
      answer = null;
    }
    if (!response.ok) {
      throw new AlloyError((answer && answer.error) || 'http_' + response.status,
        (answer && answer.message) || 'The server answered HTTP ' + response.status + '.');
    }
    return answer;
  }

  function openPopup(name) {
    const width = 520;
    const height = 720;
    const left = Math.max(0, (window.screenX || 0) + ((window.outerWidth || width) - width) / 2);
    const top = Math.max(0, (window.screenY || 0) + ((window.outerHeight || height) - height) / 2);
    let popup = null;
    try {
      popup = window.open('', name,
        'popup=yes,width=' + width + ',height=' + height + ',left=' + left + ',top=' + top);
    } catch (e) {
      popup = null;
    }
    return popup;
  }

  function randomName(prefix) {
    const bytes = new Uint8Array(9);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function later(fn) {
    setTimeout(fn, 0);
  }

  /** Turn a session state (server answer or popup message) into a result, if it has ended. */
  function outcome(state) {
    if (!state) return null;
    if (state.status === 'succeeded' && state.connectionId) {
      return { status: 'connected', connectionId: state.connectionId, sessionId: state.sessionId };
    }
    if (state.status === 'failed') {
      const err = state.error || {};
      return {
        status: 'error', sessionId: state.sessionId,
        error: new AlloyError(err.code || 'failed', err.message || 'The connection failed.'),
      };
    }
    if (state.status === 'cancelled') return { status: 'closed', sessionId: state.sessionId };
    return null;
  }

  function deliver(result, opts) {
    const callback = { connected: opts.onSuccess, error: opts.onError, closed: opts.onClose }[
      result.status];
    if (typeof callback !== 'function') {
      if (result.status === 'error') console.warn('alloy:', result.error);
      return;
    }
    try {
      if (result.status === 'connected') callback(result.connectionId);
      else if (result.status === 'error') callback(result.error);
      else callback();
    } catch (e) {
      later(() => { throw e; }); // the app's callback failed: report it, keep the SDK sane
    }
  }

  /**
   * Connect an account of `connectorId` for the authenticated user. Call it from a click
   * handler (browsers block popups opened later). Exactly one of onSuccess, onError, onClose
   * is called; the returned promise resolves with the same outcome and never rejects.
   * @param {string} connectorId
   * @param {ConnectOptions} [options]
   * @returns {Promise<ConnectResult>}
   */
  function connect(connectorId, options) {
    const opts = options || {};
    const mode = opts.mode || 'popup';
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    let done = false;
    const cleanups = [];

    function finish(result) {
      if (done) return;
      done = true;
      cleanups.forEach((fn) => { try { fn(); } catch (e) { /* already gone */ } });
      deliver(result, opts);
      resolve(result);
    }
    function fail(code, message) {
      later(() => finish({ status: 'error', error: new AlloyError(code, message) }));
      return promise;
    }

    if (typeof connectorId !== 'string' || !connectorId) {
      return fail('invalid_connector', 'alloy.connect() needs a connector ID such as "notion".');
    }
    if (mode !== 'popup' && mode !== 'redirect') {
      return fail('invalid_mode', "mode must be 'popup' or 'redirect'.");
    }
    if (!token) return fail('not_authenticated', 'Call alloy.authenticate(jwt) first.');
    const body = {
      connectorId, mode, scopes: opts.scopes, data: opts.data, authConfigId: opts.authConfigId,
    };

    if (mode === 'redirect') {
      body.returnUrl = opts.returnUrl || window.location.href.split('#')[0];
      call('POST', '/sdk/sessions', body).then((session) => {
        done = true;
        resolve({ status: 'redirecting', sessionId: session.sessionId });
        window.location.assign(session.url);
      }, (error) => finish({ status: 'error', error }));
      return promise;
    }

    // Open the window now, while the click still counts; point it at the page once known.
    const popup = openPopup(randomName('alloy_connect_'));
    if (!popup) {
      return fail('popup_blocked', "The browser blocked the popup: call alloy.connect() from a " +
        "click handler, or use mode: 'redirect'.");
    }
    cleanups.push(() => { if (!popup.closed) popup.close(); });
    try {
      popup.document.title = 'Connecting…';
    } catch (e) { /* not ours any more */ }

    call('POST', '/sdk/sessions', body).then((session) => {
      if (done) return;
      watch(session.sessionId);
      if (popup.closed) return; // the watcher cancels it
      try {
        popup.location.replace(session.url);
      } catch (e) {
        popup.location.href = session.url;
      }
    }, (error) => finish({ status: 'error', error }));

    function watch(sessionId) {
      const path = '/sdk/sessions/' + encodeURIComponent(sessionId);
      let closedAt = 0;
      let asking = false;

      function report(state) {
        const result = outcome(state);
        if (result) finish(result);
        return result !== null;
      }
      async function ask(method, suffix) {
        try {
          return await call(method, path + (suffix || ''));
        } catch (e) {
          if (e.code !== 'network_error') {
            finish({ status: 'error', error: e });
          }
          return null;
        }
      }
      function onMessage(event) {
        if (event.origin !== SERVER_ORIGIN || event.source !== popup) return;
        const m = event.data;
        if (!m || m.type !== 'alloy:connect' || m.sessionId !== sessionId) return;
        report(m);
      }
      async function poll() {
        if (done || asking || closedAt) return;
        asking = true;
        try {
          report(await ask('GET'));
        } finally {
          asking = false;
        }
      }
      async function cancel() {
        const state = await ask('POST', '/cancel');
        if (!report(state) && !done) {
          // Cancelled on our side, yet the server answers otherwise: never hang.
          finish({ status: 'closed', sessionId });
        }
      }
      async function onClosed() {
        const state = await ask('GET');
        if (done || report(state) || !state) {
          if (!state && !done) finish({ status: 'closed', sessionId });
          return;
        }
        const sinceLaunch = state.launchedSecondsAgo;
        const elapsed = (Date.now() - closedAt) / 1000;
        if (sinceLaunch !== null && sinceLaunch - elapsed < SEVERED_WITHIN_S) {
          // Probably cut off by COOP while going to the provider: the attempt goes on
          // without us; the server tells us how it ends (it expires at the latest).
          const timer = setInterval(async () => {
            if (asking || done) return;
            asking = true;
            try {
              report(await ask('GET'));
            } finally {
              asking = false;
            }
          }, opts.pollIntervalMs || POLL_MS);
          cleanups.push(() => clearInterval(timer));
          return;
        }
        setTimeout(() => { if (!done) cancel(); },
          state.status === 'launched' ? CLOSE_GRACE_MS : 0);
      }
      const closedTimer = setInterval(() => {
        if (done || closedAt || !popup.closed) return;
        closedAt = Date.now();
        clearInterval(closedTimer);
        onClosed();
      }, CLOSED_CHECK_MS);
      const pollTimer = setInterval(poll, opts.pollIntervalMs || POLL_MS);
      window.addEventListener('message', onMessage);
      cleanups.push(() => clearInterval(closedTimer), () => clearInterval(pollTimer),
        () => window.removeEventListener('message', onMessage));
    }
    return promise;
  }

  function takeSessionFromUrl() {
    const hash = window.location.hash.replace(/^#/, '');
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const sessionId = params.get('alloy_session');
    if (!sessionId) return null;
    params.delete('alloy_session');
    const rest = params.toString();
    window.history.replaceState(window.history.state, '',
      window.location.pathname + window.location.search + (rest ? '#' + rest : ''));
    return sessionId;
  }

  /**
   * On the page a redirect-mode connect() returned to: the outcome, checked with the server
   * (call `authenticate` first). Calls the matching callback too. Resolves to null when this
   * page load is not the end of a redirect.
   * @param {ConnectOptions} [options] onSuccess, onError, onClose
   * @returns {Promise<ConnectResult|null>}
   */
  async function redirectResult(options) {
    const opts = options || {};
    const sessionId = takeSessionFromUrl();
    if (!sessionId) return null;
    let result = null;
    for (let attempt = 0; attempt < 30 && !result; attempt++) {
      try {
        result = outcome(await call('GET', '/sdk/sessions/' + encodeURIComponent(sessionId)));
      } catch (e) {
        if (e.code !== 'network_error' || attempt >= 4) {
          result = { status: 'error', error: e, sessionId };
        }
      }
      if (!result) await new Promise((r) => setTimeout(r, 1000));
    }
    if (!result) {
      result = {
        status: 'error', sessionId,
        error: new AlloyError('pending', 'The connection has not finished yet.'),
      };
    }
    deliver(result, opts);
    return result;
  }

  /**
   * Open the "my connections" page of the authenticated user (Disconnect, Reconnect).
   * Resolves when the popup closes (or, in redirect mode, as the page leaves).
   * @param {ManageOptions} [options]
   * @returns {Promise<void>}
   */
  function manageConnections(options) {
    const opts = options || {};
    const mode = opts.mode || 'popup';
    return new Promise((resolve) => {
      const failWith = (error) => {
        if (typeof opts.onError === 'function') opts.onError(error);
        else console.warn('alloy:', error);
        resolve();
      };
      if (!token) {
        later(() => failWith(new AlloyError('not_authenticated',
          'Call alloy.authenticate(jwt) first.')));
        return;
      }
      const body = { kind: 'manage', mode };
      if (mode === 'redirect') {
        body.returnUrl = opts.returnUrl || window.location.href.split('#')[0];
        call('POST', '/sdk/sessions', body).then((session) => {
          resolve();
          window.location.assign(session.url);
        }, failWith);
        return;
      }
      const popup = openPopup(randomName('alloy_manage_'));
      if (!popup) {
        later(() => failWith(new AlloyError('popup_blocked',
          'The browser blocked the popup: call it from a click handler.')));
        return;
      }
      call('POST', '/sdk/sessions', body).then((session) => {
        const seen = new Set();
        const onMessage = (event) => {
          const m = event.data;
          if (event.origin !== SERVER_ORIGIN || event.source !== popup || !m ||
              m.type !== 'alloy:connections' || m.sessionId !== session.sessionId) return;
          const key = m.event + ':' + m.connectionId;
          if (seen.has(key)) return;
          seen.add(key);
          const callback = m.event === 'disconnected' ? opts.onDisconnect : opts.onReconnect;
          if (typeof callback === 'function') {
            try { callback(m.connectionId); } catch (e) { later(() => { throw e; }); }
          }
        };
        window.addEventListener('message', onMessage);
        const timer = setInterval(() => {
          if (!popup.closed) return;
          clearInterval(timer);
          window.removeEventListener('message', onMessage);
          if (typeof opts.onClose === 'function') {
            try { opts.onClose(); } catch (e) { later(() => { throw e; }); }
          }
          resolve();
        }, CLOSED_CHECK_MS);
        if (!popup.closed) popup.location.replace(session.url);
      }, (error) => {
        popup.close();
        failWith(error);
      });
    });
  }

  return Object.freeze({
    authenticate, connect, redirectResult, manageConnections, signOut, AlloyError,
    version: VERSION, server: SERVER,
  });
})();
