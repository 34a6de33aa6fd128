"""pytest plugin: fixtures for keeping a proof's claims under regression tests."""
