"""Chaos lab runner for FraiseQL: provisions through Ansible, drives load, judges, reports."""

__version__ = "0.1.0"
