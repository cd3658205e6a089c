"""GitOps review: what a pull request changes (plan between two revisions) and the policy checks it must pass."""
