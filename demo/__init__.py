"""The demo: every stage of fakedet on real photographs that ship inside installed wheels.

The top of the dependency direction: it may import every stage, and nothing imports it.
"""
