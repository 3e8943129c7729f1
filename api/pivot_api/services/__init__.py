"""The work behind the routers: each service owns one area and the clients it needs."""
