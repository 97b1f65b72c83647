"""`ANY /connections/{id}/proxy/{path}`: the provider's API through a stored connection."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from alloy_oauth import connections, proxy
from alloy_oauth.server.deps import bearer_key, get_runtime, hot_route, path_parameter

router = APIRouter(tags=["proxy"])

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
PATH = "/connections/{connection_id}/proxy/{path:path}"


async def proxy_request(request: Request) -> Response:
    """The provider's answer to `{apiBaseUrl}/{path}` with the connection's credential applied;
    method, query, headers and body passed through, streaming both ways."""
    rt = await get_runtime(request)
    connection_id: str = request.path_params["connection_id"]
    path: str = request.path_params["path"]
    conn = await connections.get_for_key(rt, bearer_key(request), connection_id)
    raw = request.scope.get("raw_path") or request.url.path.encode()
    raw_path = raw.split(b"/proxy/", 1)[1].decode("latin-1") if b"/proxy/" in raw else path
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    body = await proxy.read_body(request.stream())
    upstream = await proxy.send(
        rt, conn, method=request.method, raw_path=raw_path,
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=headers, body=body, had_length="content-length" in request.headers)
    answer_headers = upstream.headers()
    response: Response
    if request.method == "HEAD" or upstream.status_code in (204, 304):
        await upstream.aclose()
        response = Response(status_code=upstream.status_code)
    elif (small := await upstream.small_body()) is not None:
        response = Response(small, status_code=upstream.status_code)
    else:
        response = StreamingResponse(upstream.body(), status_code=upstream.status_code,
                                     background=BackgroundTask(upstream.aclose))
    response.raw_headers = answer_headers
    return response


# Served ahead of FastAPI's routing (create_app); the declarations document it.
hot_routes = [hot_route(router, PATH, proxy_request, METHODS, openapi_extra={"parameters": [
    path_parameter("connection_id", "The connection id (or its credential id)."),
    path_parameter("path", "The path under the connector's API base URL.")]})]
