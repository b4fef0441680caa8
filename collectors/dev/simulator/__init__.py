"""A deterministic population player: game servers, chat channels, app users and hosts, with ground truth."""
