// The orders' notification step, as the Rust one: joins each validated order with its payment
// within 10 minutes of event time (1 minute of grace) and emails once per order.
import { Join, Output, config, processor as weirProcessor } from "weir";
export { timerHandler } from "weir";

const PAID = new Join("order-payment", 600_000).grace(60_000);
const email = (order, status) => new Output(`{"order_id":"${new TextDecoder().decode(order)}","email":"${status}"}`, { key: order });

function expire(timer) {
  return (PAID.expire(timer) ?? []).filter((e) => e.side === Join.LEFT && !e.matched).map((e) => email(e.key, "payment missing"));
}

export const processor = weirProcessor((record) => {
  const side = record.input === (config("payments") ?? "payments") ? Join.RIGHT : Join.LEFT;
  if (side === Join.LEFT && !record.text().includes('"status":"VALIDATED"')) return;
  return (PAID.add(side, record) ?? []).map(() => email(record.key, "confirmed"));
}, { config: ["payments"], onTimer: expire });
