import { revision } from '../../revision';

export const dynamic = 'force-dynamic';

const SIDES = ['buy', 'sell'];

// Validates a trade and echoes it: the JSON POST route a deploy must not drop.
export async function POST(request) {
  let body;
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: 'body must be JSON' }, { status: 400 });
  }
  const { symbol, side, qty, price } = body || {};
  if (typeof symbol !== 'string' || !SIDES.includes(side) || !(qty > 0) || !(price > 0)) {
    return Response.json({ error: 'need symbol, side (buy|sell), qty > 0, price > 0' }, { status: 422 });
  }
  return Response.json({ trade: { symbol, side, qty, price }, revision: revision() }, { status: 201 });
}
