"""The red-team suite: one module per way around the judge (issue 13's classes).

Every test attacks the running proxy the way a prompt-injected agent with a shell would,
and asserts on the ground truth: what the recording servers received.
"""

# A credential of AWS's shape (not a documented example): the embedded engine denies it
# anywhere but AWS.
AWS_KEY = "AKIAQX4RZT7NM2VBK5WJ"
