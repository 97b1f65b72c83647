// The hosted pages' only script: report the outcome to the window that opened this popup
// (to its exact origin, never '*'), close the popup, or go back to the app in redirect mode.
(function () {
  'use strict';
  var node = document.getElementById('alloy-data');
  var data = node ? JSON.parse(node.textContent) : {};
  var opener = null;
  try { opener = window.opener; } catch (e) { opener = null; }
  var delivered = false;
  if (data.message && data.targetOrigin && opener) {
    try {
      opener.postMessage(data.message, data.targetOrigin);
      delivered = true;
    } catch (e) {
      delivered = false;
    }
  }
  if (data.redirect) {
    window.location.replace(data.redirect);
    return;
  }
  if (delivered && data.close) {
    window.close();
  }
  var hint = document.getElementById('no-opener');
  if (hint && !delivered) hint.hidden = false;
  var buttons = document.querySelectorAll('[data-close]');
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].hidden = false;
    buttons[i].addEventListener('click', function () { window.close(); });
  }
})();
