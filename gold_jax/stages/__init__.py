"""The stages of GOLD, one run each: `config -> run(config, workdir) -> summary`.

- `collect`: trains a safe SAC-Lagrangian expert and records its demonstrations.
- `train_guide`: trains the offline guide (Decision Transformer or BC) on demonstrations.
- `distill`: the online stage (jump-start guide/student mix, IQL or CVPO student), also the
  from-scratch baselines.
- `evaluate`: scores, plots, films or exports a saved policy.

Each module holds its `Config` (one comment per field), `validate` and the run function; the
launchers in `experiments/` only turn flags into a Config and call it.
"""
