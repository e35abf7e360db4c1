"""The end-to-end flow: users created, updated and deleted through the API; a poison event."""

import pytest

from tests import flows

pytestmark = pytest.mark.e2e


def test_user_lifecycle(pipeline):
    flows.user_lifecycle(pipeline)


def test_poison_event_reaches_the_dlqs(pipeline):
    flows.poison_event(pipeline)
