"""Everything that acts in a task: the `Policy` interface, each checkpoint kind's policy and loader, rollouts,
demo recording and evaluation."""
