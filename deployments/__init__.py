"""Ray Serve: the HTTP API (`deployments.api`) and one Serve application per engine
(`deployments.engines`), with the Serve config YAMLs."""
