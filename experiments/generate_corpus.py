r"""Generates a driving corpus: recorded MetaDrive procedural scenarios in ScenarioNet format.

  python -m experiments.generate_corpus --out_dir=data/corpus --num_scenarios=1000 \
      --workers=8 --seed=0

Scenario i is deterministic for (--seed, i); a rerun of the same command resumes an
interrupted one. Prints the report and writes it to <out_dir>/corpus_report.json. The library
is `gold_jax.driving.corpus`.
"""

from gold_jax import launch
from gold_jax.driving.corpus import Config, run, validate


define_flags = launch.flags_of(Config, workdir=False)


main = launch.make_main(launch.validated_config(Config, validate), run, workdir_flag=None)


if __name__ == '__main__':
  launch.run(main, define_flags)
