"""What runs next to student code: the sandbox that starts it and the worker it runs in. Nothing secret is here, and nothing here imports the rest of normgrade (tests/test_layout.py)."""
