"""A faithful fake of the Orb billing API for tests, benchmarks and demos."""

from orb_source.sandbox.account import Account
from orb_source.sandbox.faults import Fault
from orb_source.sandbox.generator import generate_account
from orb_source.sandbox.mutations import simulate_day
from orb_source.sandbox.server import SandboxServer, serve

__all__ = ["Account", "Fault", "SandboxServer", "generate_account", "serve", "simulate_day"]
