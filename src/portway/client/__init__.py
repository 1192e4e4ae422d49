"""portway's HTTP client: CLI contexts (where a server is and how to reach
it) and a typed client of the server's REST API (docs/cli-contexts.md).

Imports nothing of portway but its errors, so the CLI can talk to a remote
server without loading drivers or the store. Modules are imported one by one
(``portway.client.http`` loads httpx, which local mode never needs).
"""
