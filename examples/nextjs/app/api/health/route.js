import { revision } from '../../revision';

export const dynamic = 'force-dynamic';

export function GET() {
  return Response.json({ status: 'healthy', revision: revision() });
}
