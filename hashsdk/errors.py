"""The one exception type for user mistakes: bad arrays, bad files, bad arguments.

It subclasses ValueError so that ``except ValueError`` still catches it; the CLIs print its
message without a traceback.
"""


class HashsdkError(ValueError):
    """Raised for input that hashsdk cannot use; the message names what was expected."""
