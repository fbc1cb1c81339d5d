"""The Strawberry ASGI app: context from the request, GraphiQL served from our own assets."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from app.graphql.context import Context, authenticate_connection, build_context
from app.settings import get_settings

STATIC_PREFIX = "/static/graphiql"
GRAPHQL_PATH = "/graphql"

DEFAULT_QUERY = """\
# Welcome to Tenantry.
#  1. Run the login below (demo users: see the README).
#  2. Put the token in the Headers tab below:
#     {"Authorization": "Bearer <token>"}
#  3. The Docs panel lists every query and mutation.

mutation Login {
  login(email: "owner@acme.demo", password: __PASSWORD__) {
    token
  }
}
"""

DEFAULT_HEADERS = '{"Authorization": "Bearer <token>"}'

IDE_HTML = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Tenantry GraphiQL</title>
    <link rel="stylesheet" href="__STATIC__/graphiql.min.css" />
    <style>
      html, body { height: 100%; margin: 0; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
  </head>
  <body>
    <div id="graphiql">Loading…</div>
    <script src="__STATIC__/react.production.min.js"></script>
    <script src="__STATIC__/react-dom.production.min.js"></script>
    <script src="__STATIC__/graphiql.min.js"></script>
    <script>
      (function () {
        var config = __CONFIG__;
        // Subscriptions go over graphql-transport-ws; GraphiQL sends the Headers tab
        // (the Authorization header) as the connection_init payload.
        var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + config.url;
        var fetcher = GraphiQL.createFetcher({ url: config.url, subscriptionUrl: wsUrl });
        var root = ReactDOM.createRoot(document.getElementById("graphiql"));
        root.render(
          React.createElement(GraphiQL, {
            fetcher: fetcher,
            defaultQuery: config.defaultQuery,
            defaultHeaders: config.defaultHeaders,
            defaultEditorToolsVisibility: "headers",
            shouldPersistHeaders: true,
          })
        );
      })();
    </script>
  </body>
</html>
"""


def graphiql_html(
    url: str = GRAPHQL_PATH, static_prefix: str = STATIC_PREFIX, demo_password: str | None = None
) -> str:
    """The IDE page. With demo data on, the sample login carries the (documented) demo password."""
    query = DEFAULT_QUERY.replace("__PASSWORD__", json.dumps(demo_password or "your password"))
    config = {"url": url, "defaultQuery": query, "defaultHeaders": DEFAULT_HEADERS}
    # "</" cannot end the inline script early once escaped.
    config_js = json.dumps(config).replace("</", "<\\/")
    return IDE_HTML.replace("__STATIC__", static_prefix).replace("__CONFIG__", config_js)


class TenantryGraphQL(GraphQL):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Subscriptions speak graphql-transport-ws only (the legacy graphql-ws is retired).
        kwargs.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        super().__init__(*args, **kwargs)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        # The credential may come in connection_init; a missing or bad one is not refused
        # here: each operation answers UNAUTHENTICATED, as over HTTP.
        await authenticate_connection(context)
        return UNSET

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        return await build_context(request, response)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:  # type: ignore[override]
        # Our own page on our own assets: the stock page loads them from a public CDN.
        settings = get_settings()
        demo_password = settings.demo_password if settings.seed_demo else None
        return HTMLResponse(graphiql_html(demo_password=demo_password))
