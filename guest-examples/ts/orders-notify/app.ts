// The orders' notification step, as the Rust one: joins each validated order with its payment
// within 10 minutes of event time (1 minute of grace) and emails once per order.
import { Join, Output, config, processor as weirProcessor, type Record, type Timer } from "weir";
export { timerHandler } from "weir";

const PAID = new Join("order-payment", 600_000).grace(60_000);

function email(order: Uint8Array, status: string): Output {
  return new Output(`{"order_id":"${new TextDecoder().decode(order)}","email":"${status}"}`, { key: order });
}

function expire(timer: Timer): Output[] {
  return (PAID.expire(timer) ?? []).filter((e) => e.side === Join.LEFT && !e.matched).map((e) => email(e.key, "payment missing"));
}

export const processor = weirProcessor(
  (record: Record) => {
    const side = record.input === (config("payments") ?? "payments") ? Join.RIGHT : Join.LEFT;
    if (side === Join.LEFT && !record.text().includes('"status":"VALIDATED"')) return;
    if (record.key === null) throw new Error("an order or a payment needs a key");
    const order = record.key;
    return (PAID.add(side, record) ?? []).map(() => email(order, "confirmed"));
  },
  { config: ["payments"], onTimer: expire },
);
