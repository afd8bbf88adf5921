"""HTTP routers: parse, authorise, call a service, shape the output."""
