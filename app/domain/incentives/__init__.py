"""Service-provider incentives (直播服务商激励): contracts, programs, the monthly computation,
publication with vouchers, and redemption. Choices where the spec is silent: docs/incentives.md.

- `months.py`: the calendar (months, a voucher's expiry, working days)
- `schemas.py`: request and response shapes
- `service.py`: contracts, programs, vouchers, redemptions, holidays
- `compute.py`: the monthly computation and the publication
- `exports.py`: the statements as CSV / XLSX

The names other modules import are re-exported here."""

from __future__ import annotations

from app.domain.incentives.compute import compute_month, list_statements, publish_month
from app.domain.incentives.exports import EXPORT_COLUMNS, export_rows, statements_download, to_csv, to_xlsx
from app.domain.incentives.months import (
    MONTH_PATTERN,
    NOTICE_WORKING_DAYS,
    VOUCHER_DAYS,
    month_start,
    parse_month,
    shift_month,
    voucher_expiry,
    working_days_between,
)
from app.domain.incentives.schemas import (
    ContractCreate,
    ContractMode,
    ContractOut,
    Dimension1Line,
    Dimension2Line,
    EndIn,
    HolidaysIn,
    HolidaysOut,
    MonthResult,
    ProgramCreate,
    ProgramOut,
    RedemptionCreate,
    RedemptionOut,
    RedemptionRejectIn,
    StatementOut,
    VoucherOut,
)
from app.domain.incentives.service import (
    act_on_contract,
    act_on_redemption,
    contract_history,
    contract_out,
    create_contract,
    create_program,
    get_contract,
    get_holidays,
    get_redemption,
    list_contracts,
    list_programs,
    list_vouchers,
    program_out,
    redemption_out,
    replace_holidays,
    request_redemption,
    statement_out,
    voucher_out,
)

__all__ = [
    "EXPORT_COLUMNS",
    "MONTH_PATTERN",
    "NOTICE_WORKING_DAYS",
    "VOUCHER_DAYS",
    "ContractCreate",
    "ContractMode",
    "ContractOut",
    "Dimension1Line",
    "Dimension2Line",
    "EndIn",
    "HolidaysIn",
    "HolidaysOut",
    "MonthResult",
    "ProgramCreate",
    "ProgramOut",
    "RedemptionCreate",
    "RedemptionOut",
    "RedemptionRejectIn",
    "StatementOut",
    "VoucherOut",
    "act_on_contract",
    "act_on_redemption",
    "compute_month",
    "contract_history",
    "contract_out",
    "create_contract",
    "create_program",
    "export_rows",
    "statements_download",
    "get_contract",
    "get_redemption",
    "list_contracts",
    "list_programs",
    "list_statements",
    "list_vouchers",
    "month_start",
    "parse_month",
    "program_out",
    "publish_month",
    "redemption_out",
    "get_holidays",
    "replace_holidays",
    "request_redemption",
    "shift_month",
    "statement_out",
    "to_csv",
    "to_xlsx",
    "voucher_expiry",
    "voucher_out",
    "working_days_between",
]
