"""The live bases module (达人直播基地): bases, creator and shop bindings, the product pool, QR
check-in with its three rules, cooperations and the base's statistics.

- `schemas.py`: request bodies and answers (Pydantic)
- `service.py`: bases, bindings, statistics
- `pool.py`: the product pool and how it follows products and shops
- `qr.py`: check-in codes and their QR pictures
- `check_ins.py`: check-ins and cooperations, with their timers

Every statement is in `app/db/repositories/live_bases.py`; the services answer with the
schemas, so the routers shape nothing. The timer and signal handlers are listed in
`app/modules.py`, the demo step is `app/demo/live_bases.py`."""

from app.domain.live_bases.check_ins import (
    COOPERATION_CONFLICT,
    HEAD_AGENCY_OTHER_BASE,
    LEVEL_TOO_HIGH,
    MAX_LEVEL_FOR_NEW_COOPERATION,
    PENDING_CHECK_IN_MINUTES,
    check_in_history,
    check_in_out,
    check_out,
    confirm_check_in,
    cooperation_history,
    cooperation_out,
    evaluate,
    get_check_in,
    get_cooperation,
    list_check_ins,
    list_cooperations,
    open_check_in,
    terminate_cooperation,
)
from app.domain.live_bases.pool import list_pool, qualifies, set_listed, shop_card
from app.domain.live_bases.qr import TOKEN_AUDIENCE, QrPicture, check_in_code, check_in_qr, qr_svg
from app.domain.live_bases.schemas import (
    AgencyCard,
    CheckInCodeOut,
    CheckInCreate,
    CheckInOut,
    CooperationOut,
    CreatorBindingCreate,
    CreatorBindingOut,
    CreatorBindingPatch,
    CreatorStats,
    Eligibility,
    LiveBaseCreate,
    LiveBaseDetail,
    LiveBaseOut,
    PoolItemOut,
    ProductStats,
    ShopBindingCreate,
    ShopBindingOut,
    ShopCard,
    StatsOut,
)
from app.domain.live_bases.service import (
    HOME_PAGE_PRODUCTS,
    INVITATION_DAYS,
    base_detail,
    create_base,
    create_creator_binding,
    create_shop_binding,
    creator_binding_history,
    fire_creator_binding,
    fire_shop_binding,
    get_creator_binding,
    get_shop_binding,
    list_bases,
    list_creator_bindings,
    list_shop_bindings,
    owned_base,
    patch_creator_binding,
    shop_binding_history,
    shop_binding_out,
    stats,
)
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import Workflow
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING

WORKFLOWS_OF_MODULE: tuple[Workflow, ...] = (CREATOR_BINDING, SHOP_BINDING, CHECK_IN, COOPERATION)

__all__ = [
    "COOPERATION_CONFLICT",
    "HEAD_AGENCY_OTHER_BASE",
    "HOME_PAGE_PRODUCTS",
    "INVITATION_DAYS",
    "LEVEL_TOO_HIGH",
    "MAX_LEVEL_FOR_NEW_COOPERATION",
    "PENDING_CHECK_IN_MINUTES",
    "TOKEN_AUDIENCE",
    "WORKFLOWS_OF_MODULE",
    "AgencyCard",
    "CheckInCodeOut",
    "CheckInCreate",
    "CheckInOut",
    "CooperationOut",
    "CreatorBindingCreate",
    "CreatorBindingOut",
    "CreatorBindingPatch",
    "CreatorStats",
    "Eligibility",
    "LiveBaseCreate",
    "LiveBaseDetail",
    "LiveBaseOut",
    "PoolItemOut",
    "ProductStats",
    "QrPicture",
    "ShopBindingCreate",
    "ShopBindingOut",
    "ShopCard",
    "StatsOut",
    "base_detail",
    "check_in_code",
    "check_in_history",
    "check_in_out",
    "check_in_qr",
    "check_out",
    "confirm_check_in",
    "cooperation_history",
    "cooperation_out",
    "create_base",
    "create_creator_binding",
    "create_shop_binding",
    "creator_binding_history",
    "evaluate",
    "fire_creator_binding",
    "fire_shop_binding",
    "get_check_in",
    "get_cooperation",
    "get_creator_binding",
    "get_shop_binding",
    "list_bases",
    "list_check_ins",
    "list_cooperations",
    "list_creator_bindings",
    "list_pool",
    "list_shop_bindings",
    "open_check_in",
    "owned_base",
    "patch_creator_binding",
    "qr_svg",
    "qualifies",
    "set_listed",
    "shop_binding_history",
    "shop_binding_out",
    "shop_card",
    "stats",
    "terminate_cooperation",
]
