"""Sandbox servers of the Wix and WhatsApp APIs: real HTTP on loopback, for the demo and the tests."""
