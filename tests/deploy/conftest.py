"""The EC2 template, parsed once for the tests of tests/deploy/test_ec2_*.py."""

from __future__ import annotations

import pytest

from tests.support.cloudformation import Template, load_template
from tests.support.ec2 import TEMPLATE


@pytest.fixture(scope="session")
def template() -> Template:
    """ec2/anb.yaml as plain data (cfn-lint's loader: skipped or failed without cfn-lint)."""
    return load_template(TEMPLATE)
