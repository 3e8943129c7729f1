"""HTTP routes: each parses the request, calls one service method, returns its model."""
