"""Shared feature vocabulary and the planner that matches specs to targets."""
