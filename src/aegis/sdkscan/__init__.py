"""Finds direct cloud-provider SDK use in runtime code (completion criterion 1)."""
