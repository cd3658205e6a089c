"""The Pulumi program: SES, DNS, IAM and SNS for every tenant of a stack.

``policies`` is pure (dicts from the model), and the records a domain needs come from
:mod:`mailplane.model.records`, which the DNS check and the review share; the component modules
declare resources, a domain's DNS records through its provider's publisher (``dns``, one per provider);
``program.declare`` wires them for ``__main__.py`` and ``mailplane plan``.
"""
