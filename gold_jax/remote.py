"""A policy served from its own process: the guide's forward pass off the simulator's GIL.

On a CPU, a Decision Transformer guide costs about as much per step as the simulator. The
pipelined loop (`LoopConfig(pipeline=...)`) overlaps the two by computing one half of the
envs' guide actions while the other half steps. On a worker thread (`pipeline='thread'`) the
overlap is partial: each jitted call takes and gives back the GIL several times, and the
simulator thread, in C calls that hold the GIL, keeps it for up to a whole physics step each
time. A guide in another process (`pipeline='process'`) needs no GIL of this one.

    server = PolicyServer(guide, cpus={1})  # Starts a process holding a copy of `guide`.
    a, b = server.policy(), server.policy()  # Two clients, each with its own episodes.
    pending = a.act_async(obs_a)            # Sends; the server computes meanwhile.
    ...                                     # Step other envs here.
    action = pending.result()
    a.observe(action, reward, cost)         # Sent without waiting for a reply.
    server.close()

The clients follow the `Policy` interface (`gold_jax.policies`). Only `act` waits for the
server; `reset`, `observe` and `restart` are sent and the server handles them in order, so a
client behaves exactly as the policy it copies would in this process. An error in the server
surfaces, with the server's traceback, at the next call that waits for it.

The policy is sent by pickling: `DTPolicy` and `MLPPolicy` pickle as their parameters and
settings (not their episodes' state). The server process starts by `spawn` (a forked JAX
runtime is not safe), so it imports the packages anew; allow a few seconds.
"""

import collections
import copy
import multiprocessing
import os
import pickle
import traceback
from typing import Any, Iterable, Optional

import numpy as np


class RemoteError(RuntimeError):
  """The policy server failed or exited; the message holds its traceback or exit code."""


_REPLIED = ('act', 'warm_up')  # Calls the client waits for; the others get no reply.


def _pin_process(cpus) -> None:
  """Restricts every thread of this process (and the threads it starts later) to `cpus`."""
  if not cpus or not hasattr(os, 'sched_setaffinity'):
    return
  os.sched_setaffinity(0, cpus)
  try:
    threads = [int(t) for t in os.listdir('/proc/self/task')]
  except OSError:
    return
  for thread in threads:  # Threads started before, e.g. by the runtime's import.
    try:
      os.sched_setaffinity(thread, cpus)
    except OSError:
      pass


def _serve(conn, blob: bytes, cpus) -> None:
  """The server process: builds clients' policies from the pickled `blob` and answers calls."""
  _pin_process(cpus)
  template = pickle.loads(blob)  # After pinning: the runtime's threads start on `cpus`.
  import jax  # pylint: disable=g-import-not-at-top
  policies = {}
  failed = None
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):
      return
    kind, client, args = message
    if kind == 'close':
      conn.close()
      return
    if failed is not None:  # Everything after a failure is answered with that failure.
      if kind in _REPLIED:
        conn.send(('error', failed))
      continue
    try:
      if kind == 'new':
        policy = copy.copy(template)
        if hasattr(policy, 'key'):  # A separate stream per client, like `JSRLPolicy.split`.
          policy.key = jax.random.fold_in(policy.key, client)
        policies[client] = policy
      elif kind == 'act':
        conn.send(('ok', policies[client].act(*args)))
      elif kind == 'warm_up':  # Compiles acting for these shapes, on a throwaway copy.
        (obs,) = args
        policy = copy.copy(template)
        policy.reset(len(obs))
        conn.send(('ok', policy.act(obs)))
      else:
        getattr(policies[client], kind)(*args)
    except Exception:  # pylint: disable=broad-except
      failed = f'policy server, client {client}, {kind}:\n{traceback.format_exc()}'
      if kind in _REPLIED:
        conn.send(('error', failed))


class PolicyServer:
  """A process holding a copy of `policy`; `policy()` makes clients with their own episodes.

  Args:
    policy: a picklable policy (`DTPolicy`, `MLPPolicy`, or any `Policy` that pickles).
    cpus: cores the server process is restricted to (Linux), e.g. the ones the simulators
      do not use; None leaves it to the OS.
  """

  def __init__(self, policy, cpus: Optional[Iterable[int]] = None):
    try:
      blob = pickle.dumps(policy)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
      raise TypeError(f'{type(policy).__name__} does not pickle, so it cannot be served from '
                      f'another process ({e}); act in this process instead (a pipelined '
                      "loop: pipeline='thread')") from e
    context = multiprocessing.get_context('spawn')
    self._conn, child = context.Pipe()
    env = {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}  # An accelerator stays free for the learner.
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
      self._process = context.Process(
          target=_serve, args=(child, blob, None if cpus is None else set(cpus)),
          name='gold-jax-policy-server', daemon=True)
      self._process.start()
    finally:
      for name, value in saved.items():
        if value is None:
          os.environ.pop(name, None)
        else:
          os.environ[name] = value
    child.close()
    self._waiting = collections.deque()  # Replies not received yet, in request order.
    self._clients = 0

  def policy(self) -> 'RemotePolicy':
    """A new client: a copy of the served policy with its own episodes (and key stream)."""
    client = RemotePolicy(self, self._clients)
    self.send('new', client.client)
    self._clients += 1
    return client

  def send(self, kind: str, client: int, *args) -> None:
    if self._conn.closed:
      raise RemoteError('the policy server is closed')
    try:
      self._conn.send((kind, client, args))
    except (BrokenPipeError, OSError) as e:
      raise RemoteError(f'the policy server exited (exit code {self._process.exitcode})') from e

  def request(self, kind: str, client: int, *args) -> 'Pending':
    self.send(kind, client, *args)
    pending = Pending(self)
    self._waiting.append(pending)
    return pending

  def receive_until(self, pending: 'Pending') -> None:
    """Receives replies in order until `pending`'s has arrived."""
    while not pending.done:
      try:
        status, value = self._conn.recv()
      except (EOFError, OSError) as e:
        self._process.join(1.0)
        raise RemoteError(
            f'the policy server exited (exit code {self._process.exitcode})') from e
      self._waiting.popleft().set(status, value)

  def close(self) -> None:
    """Stops the server process (waits for it, briefly)."""
    if self._conn.closed:
      return
    try:
      self._conn.send(('close', -1, ()))
    except (BrokenPipeError, OSError):
      pass
    self._conn.close()
    self._process.join(5.0)
    if self._process.is_alive():
      self._process.kill()
      self._process.join()

  def __enter__(self) -> 'PolicyServer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


class Pending:
  """An action being computed by the server; `result()` waits for it."""

  def __init__(self, server: PolicyServer):
    self._server, self.done, self._status, self._value = server, False, None, None

  def set(self, status: str, value: Any) -> None:
    self.done, self._status, self._value = True, status, value

  def result(self) -> np.ndarray:
    self._server.receive_until(self)
    if self._status == 'error':
      raise RemoteError(self._value)
    return self._value


class RemotePolicy:
  """A `Policy` whose calls run in a `PolicyServer` process (see the module docstring)."""

  def __init__(self, server: PolicyServer, client: int):
    self.server, self.client = server, client

  def reset(self, n: int) -> None:
    self.server.send('reset', self.client, int(n))

  def act_async(self, obs: np.ndarray) -> Pending:
    """Starts the forward pass for `obs`; the returned `Pending` gives the actions."""
    return self.server.request('act', self.client, np.asarray(obs, np.float32))

  def warm_up(self, obs: np.ndarray) -> None:
    """Waits until the server runs and has compiled acting on `obs`'s shape (a throwaway
    copy of the policy acts; this client's episodes are untouched)."""
    self.server.request('warm_up', self.client, np.asarray(obs, np.float32)).result()

  def act(self, obs: np.ndarray) -> np.ndarray:
    return self.act_async(obs).result()

  def observe(self, action, reward, cost) -> None:
    self.server.send('observe', self.client, np.asarray(action, np.float32),
                      np.asarray(reward, np.float32), np.asarray(cost, np.float32))

  def restart(self, done) -> None:
    self.server.send('restart', self.client, np.asarray(done, bool))
