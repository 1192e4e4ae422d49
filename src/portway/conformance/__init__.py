"""The conformance suite: behaviour cases run against every configured target."""
