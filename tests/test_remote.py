"""A policy served from another process acts exactly as the local one, and fails loudly."""

import pickle

import jax
import numpy as np
import pytest

from gold_jax import remote
from gold_jax.agents import bc, dt, iql
from gold_jax.policies import DTPolicy, MLPPolicy

OBS_DIM, ACT_DIM = 5, 2
TINY_DT = dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4)


@pytest.fixture(scope='module')
def dt_policy():
  return DTPolicy(dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, TINY_DT), 10.0, 0.0)


def test_policies_pickle_as_parameters_and_settings(dt_policy):
  obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
  copy = pickle.loads(pickle.dumps(dt_policy))
  dt_policy.reset(3)
  copy.reset(3)
  np.testing.assert_allclose(copy.act(obs), dt_policy.act(obs), atol=1e-6)
  assert copy.target_return == 10.0 and copy.state.opt_state is None  # Acting fields only.

  state = iql.init(jax.random.PRNGKey(1), OBS_DIM, ACT_DIM, iql.Config(hidden_dims=(8, 8)))
  student = MLPPolicy(iql, state, deterministic=False, seed=3)
  twin = pickle.loads(pickle.dumps(student))
  assert twin.module is iql and not twin.deterministic
  np.testing.assert_array_equal(twin.act(obs), student.act(obs))  # Same key, same draw.


def test_served_clients_act_like_local_copies(dt_policy):
  rng = np.random.default_rng(1)
  local = [pickle.loads(pickle.dumps(dt_policy)) for _ in range(2)]
  with remote.PolicyServer(dt_policy) as server:
    clients = [server.policy(), server.policy()]
    for policy in clients + local:
      policy.reset(2)
    for t in range(6):
      obs = rng.normal(size=(2, 2, OBS_DIM)).astype(np.float32)
      pending = [client.act_async(o) for client, o in zip(clients, obs)]  # Both in flight.
      for client, mine, o, p in zip(clients, local, obs, pending):
        action = p.result()
        np.testing.assert_allclose(action, mine.act(o), atol=1e-6, err_msg=f'step {t}')
        reward = rng.normal(size=2).astype(np.float32)
        client.observe(action, reward, np.zeros(2))
        mine.observe(action, reward, np.zeros(2))
        if t == 3:
          client.restart(np.array([True, False]))
          mine.restart(np.array([True, False]))


def test_server_errors_name_the_call_and_keep_failing(dt_policy):
  with remote.PolicyServer(dt_policy) as server:
    client = server.policy()
    client.reset(2)
    client.restart(np.ones(3, bool))  # Wrong size: fails in the server, reported at the next act.
    with pytest.raises(remote.RemoteError, match=r'client 0, restart:(.|\n)*Incompatible shapes'):
      client.act(np.zeros((2, OBS_DIM), np.float32))
    with pytest.raises(remote.RemoteError, match='restart'):
      client.act(np.zeros((2, OBS_DIM), np.float32))
  with pytest.raises(remote.RemoteError, match='closed'):
    client.act(np.zeros((2, OBS_DIM), np.float32))


def test_a_dead_server_is_reported():
  state = bc.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, bc.Config(hidden_dims=(8,)))
  with remote.PolicyServer(MLPPolicy(bc, state)) as server:
    client = server.policy()
    assert client.act(np.zeros((1, OBS_DIM), np.float32)).shape == (1, ACT_DIM)
    server._process.kill()  # pylint: disable=protected-access
    server._process.join()  # pylint: disable=protected-access
    with pytest.raises(remote.RemoteError, match='exited'):
      client.act(np.zeros((1, OBS_DIM), np.float32))


class _Unpicklable:
  """A policy holding a lambda: it cannot be sent to another process."""

  def __init__(self):
    self.fn = lambda obs: obs

  def act(self, obs):
    return self.fn(obs)


def test_a_policy_that_does_not_pickle_is_refused_with_the_alternative():
  with pytest.raises(TypeError, match=r"_Unpicklable does not pickle(.|\n)*pipeline='thread'"):
    remote.PolicyServer(_Unpicklable())
