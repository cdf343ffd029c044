"""The campaigns module (直播间奖励): campaigns, pre-selected creators, signups and their
per-shop decisions, the merchants' stock plan and its export, finding creators, creators' cards
and merchants' cooperation intents.

- `schemas.py`: what the endpoints take and answer;
- `service.py`: campaigns, pre-selected creators, finding creators, cards, intents;
- `signups.py`: signups: representation, creation, reading;
- `signup_actions.py`: the signups' transitions;
- `exports.py`: the stock plan and its downloads;
- `handlers.py`: the signup expiry timer and the live-session signals;

Every statement is in `app/db/repositories/campaigns.py`. The handlers are listed in
`app/modules.py`, the demo step is `app/demo/campaigns.py`."""

from __future__ import annotations

from app.db.repositories.campaigns import PLANNED_STATES, VISIBLE_TO_PARTIES
from app.domain.campaigns.exports import (
    EXPORT_HEADER,
    Download,
    export_csv,
    export_xlsx,
    stock_plan,
    stock_plan_download,
)
from app.domain.campaigns.schemas import (
    CampaignCardIn,
    CampaignCardOut,
    CampaignContactOut,
    CampaignCreate,
    CampaignCreatorOut,
    CampaignEligibleCreatorsIn,
    CampaignEligibleCreatorsOut,
    CampaignGrantTrafficIn,
    CampaignIntentIn,
    CampaignIntentOut,
    CampaignOut,
    CampaignPlannedItem,
    CampaignReasonIn,
    CampaignSignupCreate,
    CampaignSignupItemOut,
    CampaignSignupOut,
    CampaignSignupRejectIn,
    CampaignSignupShopOut,
    CampaignSignupState,
    CampaignState,
    CampaignStockPlanCreator,
    CampaignStockPlanOut,
    CampaignStockPlanRow,
    CampaignSubmitProductsIn,
)
from app.domain.campaigns.service import (
    GMV_WINDOW,
    campaign_action,
    campaign_history,
    campaign_out,
    create_campaign,
    create_intent,
    get_campaign,
    get_card,
    get_eligible,
    list_campaigns,
    list_creators,
    list_intents,
    put_card,
    set_eligible,
    visible_campaign,
)
from app.domain.campaigns.signup_actions import (
    grant_traffic,
    merchant_confirm_stock,
    merchant_decide,
    simple_action,
    submit_products,
)
from app.domain.campaigns.signups import (
    create_signup,
    get_signup,
    list_signups,
    load_signup,
    signup_history,
    signup_out,
)

__all__ = [
    "EXPORT_HEADER",
    "GMV_WINDOW",
    "PLANNED_STATES",
    "VISIBLE_TO_PARTIES",
    "CampaignCardIn",
    "CampaignCardOut",
    "CampaignContactOut",
    "CampaignCreate",
    "CampaignCreatorOut",
    "CampaignEligibleCreatorsIn",
    "CampaignEligibleCreatorsOut",
    "CampaignGrantTrafficIn",
    "CampaignIntentIn",
    "CampaignIntentOut",
    "CampaignOut",
    "CampaignPlannedItem",
    "CampaignReasonIn",
    "CampaignSignupCreate",
    "CampaignSignupItemOut",
    "CampaignSignupOut",
    "CampaignSignupRejectIn",
    "CampaignSignupShopOut",
    "CampaignSignupState",
    "CampaignState",
    "CampaignStockPlanCreator",
    "CampaignStockPlanOut",
    "CampaignStockPlanRow",
    "CampaignSubmitProductsIn",
    "Download",
    "campaign_action",
    "campaign_history",
    "campaign_out",
    "create_campaign",
    "create_intent",
    "create_signup",
    "export_csv",
    "export_xlsx",
    "get_campaign",
    "get_eligible",
    "get_signup",
    "grant_traffic",
    "list_campaigns",
    "list_creators",
    "list_intents",
    "list_signups",
    "load_signup",
    "merchant_confirm_stock",
    "merchant_decide",
    "get_card",
    "put_card",
    "set_eligible",
    "signup_history",
    "signup_out",
    "simple_action",
    "stock_plan",
    "stock_plan_download",
    "submit_products",
    "visible_campaign",
]
