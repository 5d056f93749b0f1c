"""Models by name and from checkpoints: the model registry with its download
and cache (:mod:`ann.hub.zoo`) and the one way every caller turns a config
and a checkpoint into a model (:mod:`ann.hub.loading`)."""
