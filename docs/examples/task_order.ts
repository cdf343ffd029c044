/**
 * A whole task order through the generated client (openapi-typescript types + openapi-fetch):
 * the merchant tops up, books the demo creator, the creator accepts, the platform pushes the
 * live session, the merchant approves, and both read their wallets and the order's history.
 *
 *   make clients                      # clients/ts/schema.d.ts from the service's schema
 *   make run                          # another shell: the service with the demo accounts
 *   cd docs/examples && npm ci && npm run build && LC_BASE_URL=http://127.0.0.1:8000 npm run task-order
 *
 * The suite type-checks it with `tsc --strict` and runs it against a live service
 * (tests/test_typescript_client.py).
 */
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "../../clients/ts/schema.js";

type Api = Client<paths>;
type TaskOrder = components["schemas"]["TaskOrderOut"];
type TaskOrderState = components["schemas"]["TaskOrderState"];
type Problem = components["schemas"]["Problem"];

const baseUrl = process.env.LC_BASE_URL ?? "http://127.0.0.1:8000";
const password = process.env.LC_DEMO_PASSWORD ?? "demo-pass-123";

/** The answer's body, or a thrown error that names the problem's stable `code`. */
function ok<T>(result: { data?: T; error?: unknown; response: Response }, what: string): T {
  if (result.data === undefined) {
    const problem = result.error as Problem | undefined;
    throw new Error(`${what}: ${result.response.status} ${problem?.code ?? ""} ${problem?.detail ?? ""}`);
  }
  return result.data;
}

async function login(username: string): Promise<Api> {
  const anonymous = createClient<paths>({ baseUrl });
  const token = ok(
    await anonymous.POST("/v1/auth/token", {
      body: { grant_type: "password", username, password },
      bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    }),
    `login ${username}`,
  );
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token.access_token}` } });
}

/** What a screen shows for each state: the switch is exhaustive over the machine's states. */
function label(state: TaskOrderState): string {
  switch (state) {
    case "pending_acceptance":
      return "待接单";
    case "waiting_live":
      return "待开播";
    case "live":
      return "直播中";
    case "pending_review":
      return "待验收";
    case "completed":
      return "已完成";
    case "cancelled_rejected":
    case "cancelled_by_creator":
    case "cancelled_by_merchant":
    case "cancelled_timeout":
      return "已取消";
    default: {
      const never: never = state; // a state the machine gains fails to compile here
      return never;
    }
  }
}

const etag = (order: TaskOrder) => `"${order.version}"`;
const minute = (time: Date) => new Date(Math.floor(time.getTime() / 60_000) * 60_000);

function show(step: string, order: TaskOrder): void {
  console.log(`${step}: ${order.id} ${order.state} (${label(order.state)}) v${order.version} [${order.allowed_actions.join(", ")}]`);
}

async function main(): Promise<void> {
  const [merchant, creator, platform] = await Promise.all([login("merchant"), login("creator"), login("platform")]);

  // the creator's id, as the merchant sees it in the creator square
  const me = ok(await creator.GET("/v1/accounts/me"), "creator's account");
  if (me.role !== "creator") throw new Error(`the demo creator is a ${me.role}`);
  console.log(`creator ${me.display_name} (${me.profile.nickname}), quotes ${JSON.stringify(me.profile.quotes)}`);

  // top up (outside production the gateway confirms at once)
  const topUp = ok(
    await merchant.POST("/v1/wallet/top-ups", {
      body: { amount_fen: 500_000, method: "online", reference: `example-${Date.now()}` },
      params: { header: { "Idempotency-Key": `top-up-${Date.now()}` } },
    }),
    "top-up",
  );
  console.log(`top-up ${topUp.id}: ${topUp.state}`);

  // book: the business clock is the service's, not this machine's
  const clock = ok(await merchant.GET("/v1/clock"), "clock");
  const now = new Date(clock.now);
  // a product on sale with a general commission rate (the general plan needs one)
  const products = ok(await merchant.GET("/v1/products", { params: { query: { limit: 50 } } }), "products");
  const product = products.items.find((p) => p.status === "on_sale" && p.general_commission_bp !== null);
  if (!product) throw new Error("the demo merchant has no product on sale with a general rate");
  const created = await merchant.POST("/v1/task-orders", {
    body: {
      title: "示例专场",
      contact_name: "王经理",
      contact_phone: "13800000000",
      expected_start_at: minute(new Date(now.getTime() + 61 * 60_000)).toISOString(),
      return_samples: false,
      session_type: "dedicated",
      hours: 1,
      creator_id: me.id,
      products: [{ product_id: product.id, plan: "general" }],
    },
    params: { header: { "Idempotency-Key": `order-${Date.now()}` } },
  });
  let order = ok(created, "create the task order");
  if (created.response.headers.get("ETag") !== etag(order)) throw new Error("no ETag on the creation");
  show("created", order);

  // a screen that still holds this version gets 304 while nothing changed
  const unchanged = await merchant.GET("/v1/task-orders/{order_id}", {
    params: { path: { order_id: order.id }, header: { "If-None-Match": etag(order) } },
  });
  if (unchanged.response.status !== 304) throw new Error(`If-None-Match answered ${unchanged.response.status}`);

  // the creator accepts what its screen shows (If-Match: a stale screen would get 412)
  order = ok(
    await creator.POST("/v1/task-orders/{order_id}/accept", {
      params: { path: { order_id: order.id }, header: { "If-Match": etag(order) } },
    }),
    "accept",
  );
  show("accepted", order);

  // the merchant's stale screen (version 1) cannot cancel the accepted order
  const stale = await merchant.POST("/v1/task-orders/{order_id}/cancel", {
    params: { path: { order_id: order.id }, header: { "If-Match": `"${order.version - 1}"` } },
    body: { reason: { code: "schedule_changed", note: "档期冲突" } },
  });
  if (stale.response.status !== 412 || stale.error?.code !== "precondition_failed") {
    throw new Error(`a stale cancel answered ${stale.response.status}`);
  }

  // the upstream system reports the creator's live session, started and ended
  const session = {
    external_id: `room-${Date.now()}`,
    host_id: me.id,
    started_at: now.toISOString(),
    room_url: "https://live.example.cn/room/1",
  };
  const started = await platform.POST("/v1/ingest/live-sessions", { body: session });
  ok(started, "live session start");
  if (started.response.status !== 201) throw new Error(`first push answered ${started.response.status}`);
  order = ok(await merchant.GET("/v1/task-orders/{order_id}", { params: { path: { order_id: order.id } } }), "read");
  show("live", order);
  ok(
    await platform.POST("/v1/ingest/live-sessions", {
      body: { ...session, ended_at: new Date(now.getTime() + 1000).toISOString() },
    }),
    "live session end",
  );
  order = ok(await merchant.GET("/v1/task-orders/{order_id}", { params: { path: { order_id: order.id } } }), "read");
  show("ended", order);

  // review: the merchant approves, the creator is paid
  order = ok(
    await merchant.POST("/v1/task-orders/{order_id}/approve", {
      params: { path: { order_id: order.id }, header: { "If-Match": etag(order) } },
    }),
    "approve",
  );
  show("approved", order);
  if (order.state !== "completed") throw new Error(`the order is ${order.state}`);

  const merchantWallet = ok(await merchant.GET("/v1/wallet"), "merchant wallet");
  const creatorWallet = ok(await creator.GET("/v1/wallet"), "creator wallet");
  console.log(`wallets: merchant ${merchantWallet.available_fen} available, creator ${creatorWallet.available_fen}`);
  const history = ok(
    await merchant.GET("/v1/task-orders/{order_id}/history", { params: { path: { order_id: order.id } } }),
    "history",
  );
  console.log(`history: ${history.map((step) => `${step.from_state ?? "∅"}→${step.to_state}`).join(" ")}`);
  console.log(`OK ${order.id} completed, creator received ${order.creator_received_fen} fen`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
