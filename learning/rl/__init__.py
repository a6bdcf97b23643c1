"""Online RL: the DrQ-v2 + BC agent (Eq. 1), OT rewards, the one training loop, and the learners that run on it
(per-task experts, multi-task RL baselines, lifelong RL)."""
