"""Behaviour distillation (phase 2 of PolyTask): relabel stores with teachers, train one student, lifelong."""
