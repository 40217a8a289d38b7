"""Operating the studio: settings, the `studio` CLI, cluster configuration."""
