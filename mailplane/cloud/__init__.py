"""The Pulumi program: SES, DNS, IAM and SNS for every tenant of a stack.

``records`` and ``policies`` are pure (strings and dicts from the model); the component modules
declare resources; ``program.declare`` wires them for ``__main__.py`` and ``mailplane plan``.
"""
