"""The errors gold-jax raises for input it cannot use: a bad dataset, checkpoint, flag or task.

Each is a `ValueError` whose message names the file or value at fault; `hint` says what to do
about it. Launchers (`gold_jax.launch.run`) print both on two lines and exit with status 2,
without a traceback unless asked for one. Errors of gold-jax itself stay ordinary exceptions.
"""


class GoldError(ValueError):
  """Input gold-jax cannot use. `hint` (class default, or per error) suggests the fix."""
  hint = ''

  def __init__(self, message: str, hint: str = ''):
    super().__init__(message)
    if hint:
      self.hint = hint


class ConfigError(GoldError):
  """A flag or config value that cannot work, or a workdir that holds another run."""
  hint = 'run with --helpfull to list the flags and their meaning'


class TaskError(GoldError):
  """An unknown task name, or one whose simulator cannot be built here."""
  hint = 'gold_jax.envs.list_tasks() gives the task names'


class DatasetError(GoldError):
  """A dataset file or episode list that cannot be used."""
  hint = ('a dataset is a DSRL-layout .hdf5 or .npz file with a task, such as '
          'experiments.collect writes')


class MissingDatasetError(DatasetError, FileNotFoundError):
  """The dataset file does not exist."""


class CheckpointError(GoldError):
  """A checkpoint that cannot be read, or does not fit the template it is restored into."""
  hint = 'give a run directory or its checkpoints/ folder, written by this version of gold-jax'


class MissingCheckpointError(CheckpointError, FileNotFoundError):
  """No checkpoint (or checkpoint directory) where one is expected."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint whose files are damaged (truncated, partly written or altered)."""
  hint = ('move that step directory away (a resumed run skips it by itself and continues from '
          'the newest intact checkpoint), or start again in a new --workdir')


class EnvError(GoldError):
  """An environment that cannot be built in this process as asked."""
