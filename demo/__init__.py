"""Demo data for `make run` (`manage.py seed_demo`).

Its own top-layer app because seeding creates users, rooms and messages at once:
living in `accounts` made the bottom domain layer import the ones above it.
"""
