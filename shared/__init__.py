"""Code that two or more parts of Steward must agree on, and nothing else."""
