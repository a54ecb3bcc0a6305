"""The PrepBusiness client's write side and error mapping, against the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from invoice_source.errors import (
    ApiError,
    ApiUnavailableError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
)
from invoice_source.prepbusiness.client import (
    ChargeNotFoundError,
    InvoiceAlreadyFinalizedError,
    InvoiceAlreadyPaidError,
    InvoiceNotFinalizedError,
    InvoiceNotFoundError,
    NoChargesToInvoiceError,
    PrepBusinessClient,
    PrepBusinessValidationError,
    id_batches,
)
from invoice_source.sandbox.prepbusiness import DRAFT, FINALIZED, PAID, PrepBusinessApp

from .conftest import FakeStripe

MakeClient = Callable[..., PrepBusinessClient]
UNKNOWN_ID = 987_654


def posts_to(app: PrepBusinessApp, path: str) -> int:
    return len(app.requests_to(rf"^/api/billing/{path}$", "POST"))


def test_given_a_finalized_invoice_when_finalized_again_then_already_finalized_error(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    client = make_client(11)
    invoice = client.create_invoice()
    client.finalize_invoice(invoice.id)

    with pytest.raises(InvoiceAlreadyFinalizedError, match=rf"invoice {invoice.id} is already"):
        client.finalize_invoice(invoice.id)

    assert pb_app.invoices[invoice.id].status == FINALIZED
    assert posts_to(pb_app, rf"invoices/{invoice.id}/finalize") == 2


def test_given_a_draft_when_collected_then_not_finalized_error_and_nothing_charged(
    pb_app: PrepBusinessApp, fake_stripe: FakeStripe, make_client: MakeClient
) -> None:
    client = make_client(12)
    invoice = client.create_invoice()
    pushed_before = len(fake_stripe.invoices)

    with pytest.raises(InvoiceNotFinalizedError, match="finalize it before collecting") as error:
        client.collect_invoice(invoice.id)

    assert isinstance(error.value, InvalidRequestError) and error.value.status_code == 422
    assert pb_app.invoices[invoice.id].status == DRAFT
    assert len(fake_stripe.invoices) == pushed_before


def test_given_a_paid_invoice_when_collected_again_then_already_paid_error(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    paid_id = pb_app.invoice_ids(merchant_id=11, status=PAID)[0]

    with pytest.raises(InvoiceAlreadyPaidError, match=rf"invoice {paid_id} is already paid"):
        make_client().collect_invoice(paid_id)


@pytest.mark.parametrize("action", ["finalize_invoice", "collect_invoice"])
def test_given_an_unknown_invoice_id_when_acted_on_then_invoice_not_found(
    action: str, make_client: MakeClient
) -> None:
    with pytest.raises(InvoiceNotFoundError, match=rf"invoice {UNKNOWN_ID}: it does not exist"):
        getattr(make_client(), action)(UNKNOWN_ID)


def test_given_another_merchants_invoice_when_finalized_then_not_found_for_this_merchant(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    draft_of_12 = pb_app.create_invoice(12)

    with pytest.raises(InvoiceNotFoundError, match=r"\(merchant 11\)"):
        make_client(11).finalize_invoice(draft_of_12)

    assert pb_app.invoices[draft_of_12].status == DRAFT


def test_given_no_uninvoiced_charges_when_an_invoice_is_created_then_no_charges_error(
    make_client: MakeClient,
) -> None:
    client = make_client(13)
    client.create_invoice()

    with pytest.raises(NoChargesToInvoiceError, match="no uninvoiced charges"):
        client.create_invoice()


def test_given_explicit_charge_ids_when_an_invoice_is_created_then_only_those_are_gathered(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    client = make_client()
    first, second, third = pb_app.uninvoiced_charge_ids(12)

    invoice = client.create_invoice([first, third])

    assert invoice.is_draft and invoice.merchant_id == "12"
    assert invoice.total == pb_app.charges[first].amount + pb_app.charges[third].amount
    charges = {c.id: c for c in client.list_charges(f"id:{first} OR id:{second} OR id:{third}")}
    assert {i: c.is_invoiced for i, c in charges.items()} == {
        first: True,
        second: False,
        third: True,
    }
    assert charges[first].status == "Invoiced" and charges[second].status == "Open"


def test_given_unknown_or_invoiced_charge_ids_when_created_then_validation_errors_per_item(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    invoiced = pb_app.invoices[pb_app.invoice_ids(merchant_id=11)[0]].charge_ids[0]

    with pytest.raises(PrepBusinessValidationError) as error:
        make_client().create_invoice([UNKNOWN_ID, invoiced])

    assert set(error.value.errors) == {"charge_ids.0", "charge_ids.1"}
    assert error.value.status_code == 422
    assert "already invoiced" in str(error.value)


def test_given_the_providers_token_without_a_merchant_when_invoicing_all_then_merchant_hint(
    make_client: MakeClient,
) -> None:
    with pytest.raises(InvalidRequestError) as error:
        make_client().create_invoice()

    assert error.value.status_code == 400
    assert "sources.prepbusiness.merchant_id" in str(error.value)


def test_given_a_queued_invoice_when_collected_then_it_is_created_on_stripe_first(
    pb_app: PrepBusinessApp, fake_stripe: FakeStripe, make_client: MakeClient
) -> None:
    client = make_client(11)
    invoice = client.create_invoice()
    finalized = client.finalize_invoice(invoice.id)
    assert finalized.stripe_invoice_id is None

    paid = client.collect_invoice(invoice.id)

    assert paid.is_paid and paid.stripe_invoice_status == "paid"
    assert paid.stripe_invoice_id is not None
    stripe_invoice = fake_stripe.invoices[paid.stripe_invoice_id]
    assert stripe_invoice["status"] == "paid"
    assert stripe_invoice["customer"] == "cus_prepbiz_11"
    assert invoice.total is not None
    assert stripe_invoice["total"] == int(invoice.total * 100)


def test_given_a_quick_adjustment_when_created_then_amount_is_exact_and_it_can_be_read_back(
    make_client: MakeClient,
) -> None:
    client = make_client(13)

    charge = client.create_quick_adjustment("-1234567890123.45", "Credit for damaged units")

    assert charge.amount == Decimal("-1234567890123.45")
    assert charge.status == "Open" and charge.category == "Adjustment"
    assert client.get_charge(charge.id).amount == charge.amount


def test_given_an_amount_with_three_decimals_when_adjusting_then_validation_error_on_amount(
    make_client: MakeClient,
) -> None:
    with pytest.raises(PrepBusinessValidationError) as error:
        make_client(11).create_quick_adjustment("10.005", "")

    assert set(error.value.errors) == {"amount", "description"}
    assert "0-2 decimal places" in str(error.value)


def test_given_an_unknown_charge_when_read_then_charge_not_found(make_client: MakeClient) -> None:
    with pytest.raises(ChargeNotFoundError):
        make_client().get_charge(UNKNOWN_ID)


def test_given_a_bad_token_when_listing_then_authentication_error_without_the_token(
    make_client: MakeClient,
) -> None:
    bad_token = "pb_wrong_token_abcdef"

    with pytest.raises(AuthenticationError) as error:
        make_client(token=bad_token).list_invoices()

    assert "Unauthenticated." in str(error.value)
    assert "SOURCES__PREPBUSINESS__TOKEN" in str(error.value)
    assert bad_token not in str(error.value)


def test_given_a_merchant_token_without_the_header_when_listing_then_merchant_hint(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    with pytest.raises(InvalidRequestError, match="X-Selected-Client-Id") as error:
        make_client(token=pb_app.merchant_token(11)).list_invoices()

    assert "sources.prepbusiness.merchant_id" in str(error.value)


def test_given_a_failing_finalize_when_the_server_errors_then_it_is_not_sent_twice(
    pb_app: PrepBusinessApp, make_client: MakeClient, recorded_sleeps: list[float]
) -> None:
    client = make_client(11)
    invoice = client.create_invoice()
    pb_app.inject_status(500, path_pattern=r"/finalize$")

    with pytest.raises(ApiUnavailableError, match="Server Error"):
        client.finalize_invoice(invoice.id)

    # The fault answers one request only: a retry would have reached the sandbox and succeeded.
    assert recorded_sleeps == []
    assert pb_app.invoices[invoice.id].status == DRAFT
    assert posts_to(pb_app, rf"invoices/{invoice.id}/finalize") == 0
    assert client.finalize_invoice(invoice.id).status == FINALIZED


def test_given_a_wrong_base_url_when_listing_then_the_error_names_base_url(
    pb_app: PrepBusinessApp, base_url: str
) -> None:
    client = PrepBusinessClient(
        base_url=base_url.removesuffix("/api"),
        token=pb_app.service_provider_token,
        requests_per_second=0,
    )

    with pytest.raises(NotFoundError, match=r"sources\.prepbusiness\.base_url"):
        client.list_invoices()

    client.close()
    pb_app.unmatched.clear()


def test_given_a_missing_token_when_the_client_is_built_then_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SOURCES__PREPBUSINESS__TOKEN"):
        PrepBusinessClient(base_url="http://127.0.0.1:9/api", token="")


def test_given_ids_to_find_when_batched_then_each_query_stays_short_and_within_a_page() -> None:
    ids = list(range(100_000, 100_450))

    batches = id_batches(ids, lead_clause='created_at$DATE>="2026-01-01"')

    assert [i for batch in batches for i in batch.ids] == ids
    assert len(batches[0].ids) == 75
    assert all(len(batch.ids) <= 100 and len(batch.q) <= 1500 for batch in batches)
    assert batches[0].q.startswith('created_at$DATE>="2026-01-01" OR id:100000 OR ')


def test_given_an_invoice_id_when_fetched_then_it_is_found_through_the_q_filter(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    invoice_id = pb_app.invoice_ids(merchant_id=13)[5]

    invoice = make_client().get_invoice(invoice_id)

    assert invoice.id == invoice_id and invoice.merchant_id == "13"
    assert invoice.total == pb_app.invoices[invoice_id].total
    assert pb_app.requests_to(r"^/api/billing/invoices$")[-1].arg("q") == f"id:{invoice_id}"


def test_given_an_api_error_when_raised_then_it_is_an_invoice_sync_api_error(
    make_client: MakeClient,
) -> None:
    with pytest.raises(ApiError) as error:
        make_client().finalize_invoice(UNKNOWN_ID)

    assert error.value.api == "prepbusiness" and error.value.status_code == 404
