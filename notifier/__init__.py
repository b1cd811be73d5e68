"""notifier: Wix order updates on WhatsApp, at a known cost."""

__version__ = "0.1.0"
