"""orders/roles.py: one table of what each role may do, see and act on; the lifecycle and the API read it."""
from __future__ import annotations

from api.auth.staff import ROLES
from orders import roles
from orders.lifecycle import Action
from orders.service import ROLE_ACTIONS


def test_every_staff_role_has_one_rule_and_accounts_exist_only_for_staff_roles():
    assert set(ROLES) == {role for role, rule in roles.RULES.items() if rule.staff}
    assert not {"system", "citizen"} & set(ROLES)
    assert ROLE_ACTIONS == {role: rule.actions for role, rule in roles.RULES.items()}   # the lifecycle reads the table


def test_a_department_handler_acts_and_sees_within_its_department_only():
    assert roles.may_act("handler", Action.SIGN) and roles.may_act("handler", Action.REQUEST_EXTENSION)
    assert not roles.may_act("handler", Action.DISPATCH) and not roles.may_act("handler", Action.EXTEND)
    assert roles.acts_on("handler", "430104-CHENGGUAN", "430104-CHENGGUAN")
    assert not roles.acts_on("handler", "430104-CHENGGUAN", "430111-CHENGGUAN")
    assert not roles.acts_on("handler", None, None)                       # a handler without a department: nothing
    assert roles.sees_order("dispatcher", None, "430111-CHENGGUAN") and not roles.sees_order("citizen", None, "x")
    assert roles.acts_on("citizen", None, "430111-CHENGGUAN")             # rating and reopening their own order


def test_scopes_centre_and_supervision_as_the_screens_expect():
    assert roles.scopes_of("official") == {"orders:read", "indicators:read"}
    assert "kb:write" in roles.scopes_of("admin") and "kb:write" not in roles.scopes_of("dispatcher")
    assert roles.scopes_of("nobody") == frozenset() and not roles.may_act("nobody", Action.RATE)
    assert [r for r in roles.RULES if roles.in_centre(r)] == ["agent", "dispatcher", "supervisor", "admin", "system"]
    assert not roles.in_centre("handler") and roles.supervises("handler") and roles.supervises("official")
    assert not roles.supervises("agent")
