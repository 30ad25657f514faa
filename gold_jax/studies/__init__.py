"""Studies: several stages run together and reported, each `run(config, workdir)`.

- `demo`: one seed of the whole method on one task, laptop scale, with a results table.
- `table1`: Table I and Fig. 2 of the paper (methods x tasks x seeds, resumable sweeps).
- `driving`: the driving experiment on recorded (Waymo or MetaDrive-generated) scenarios.

Their budgets come from `gold_jax.presets`.
"""
