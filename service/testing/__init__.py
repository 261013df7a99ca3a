"""Test support shared by tests/ and bench/: the loopback OpenAI-compatible stub and a throwaway PostgreSQL cluster.

`service.testing.stub_server` is the stub that stands in for LLM providers on 127.0.0.1 (scripted with the
fakes' `Step`s and fault vocabulary, `consensus.providers.fake.FAULTS`); `service.testing.pg` starts and stops
a PostgreSQL cluster in a temp dir. Neither is imported by the service itself.
"""
