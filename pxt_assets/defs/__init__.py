"""The project's tables, declared in YAML: one folder each, with a `defs.yaml` of type
`pxt_assets.MediaTableComponent` (see docs/yaml.md). `pxt_assets.definitions` loads them when Dagster loads the
code location; `dg check defs` validates them."""
