// GraphiQL for vidgen: every script, style and font comes from this server (see
// docs/web.md). Queries and mutations go over HTTP; subscriptions over graphql-transport-ws
// on the same URL, and the headers in the Headers pane become the payload of the socket's
// connection_init, so {"Authorization": "Bearer <token>"} authenticates both.
"use strict";

(function () {
  const url = new URL("/graphql", window.location.href);
  const subscriptionUrl = new URL(url);
  subscriptionUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";

  // A token from the gallery in this tab (sessionStorage) fills the Headers pane; headers
  // are not persisted by GraphiQL, so a token never lands in localStorage.
  const token = window.sessionStorage.getItem("vidgen.token");
  const headers = token ? { Authorization: "Bearer " + token } : {};

  const defaultQuery = [
    "# vidgen's GraphQL API.",
    "#",
    "# Sign in with the login mutation (or `vidgen createuser EMAIL`), then put the token",
    '# in the Headers pane below: {"Authorization": "Bearer <token>"}. Subscriptions run',
    "# over a WebSocket (graphql-transport-ws) and send the same headers in connection_init.",
    "#",
    "# Run: Ctrl-Enter. Complete: Ctrl-Space.",
    "",
    "query Viewer {",
    "  viewer { id email }",
    "  videos(first: 5) { edges { node { id status progress prompt videoUrl } } }",
    "}",
    "",
  ].join("\n");

  const fetcher = GraphiQL.createFetcher({
    url: url.href,
    subscriptionUrl: subscriptionUrl.href,
  });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      defaultQuery: defaultQuery,
      defaultHeaders: JSON.stringify(headers, null, 2),
      defaultEditorToolsVisibility: token ? "headers" : true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    }),
  );
})();
