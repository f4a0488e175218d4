"""Workspace service schemas (a bookable offering with an optional starting price)."""

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields
from marshmallow.validate import Length, Range

from backend.schemas.common import INT32_MAX, BaseSchema, StrictDecimal, StrictInteger, not_blank, page_schema

# Active ISO 4217 codes, without precious metals, fund and testing codes.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR
    ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
    MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
    PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
    SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND
    VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)
# Numeric(12, 2) holds at most ten integer digits.
MAX_PRICE = Decimal("9999999999.99")
# How the OpenAPI document shows a price: what the API writes, and the plain form it reads
# (ASCII digits; `[0-9]`, not `\d`, which also matches other scripts' digits).
PRICE_PATTERN = r"^[0-9]{1,10}\.[0-9]{2}$"
PRICE_INPUT_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"


def validate_currency(value: str) -> None:
    if value not in ISO_4217:
        raise ValidationError("Not an active ISO 4217 currency code (uppercase, e.g. 'USD', 'EUR').")


def validate_cents(value: Decimal) -> None:
    """Rejects sub-cent prices instead of silently rounding them ("19.990" is fine)."""
    _sign, digits, exponent = value.as_tuple()
    # The decimal fields refuse NaN and infinities, whose exponent is a letter.
    assert isinstance(exponent, int)
    while exponent < -2 and digits and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if exponent < -2:
        raise ValidationError("At most 2 decimal places.")


class ServiceUpdateSchema(BaseSchema):
    name = fields.String(validate=[Length(min=1, max=255), not_blank])
    description = fields.String(allow_none=True)
    format = fields.String(allow_none=True, validate=Length(max=64))
    duration_minutes = StrictInteger(allow_none=True, validate=Range(min=1, max=INT32_MAX))
    # Read exactly (a JSON number via its text, never float math), written as "19.99".
    starting_price = StrictDecimal(
        allow_none=True,
        as_string=True,
        validate=[Range(min=0, max=MAX_PRICE), validate_cents],
        metadata={
            "description": "A decimal string, >= 0 with at most 2 decimal places (a JSON number "
            "is read exactly too); null clears it.",
            "pattern": PRICE_INPUT_PATTERN,
            "example": "19.99",
        },
    )
    currency = fields.String(validate=validate_currency)
    is_active = fields.Boolean()
    sort_order = StrictInteger(validate=Range(min=-INT32_MAX, max=INT32_MAX))


class ServiceCreateSchema(ServiceUpdateSchema):
    name = fields.String(required=True, validate=[Length(min=1, max=255), not_blank])
    currency = fields.String(load_default="USD", validate=validate_currency)


class ServicePublicSchema(Schema):
    id = fields.UUID()
    workspace_id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)
    format = fields.String(allow_none=True)
    duration_minutes = fields.Integer(allow_none=True)
    starting_price = fields.Decimal(
        as_string=True,
        places=2,
        allow_none=True,
        metadata={
            "description": "A decimal string with 2 places.",
            "pattern": PRICE_PATTERN,
            "example": "19.99",
        },
    )
    currency = fields.String()
    is_active = fields.Boolean()
    sort_order = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


ServicePageSchema = page_schema(ServicePublicSchema, "ServicePage")
