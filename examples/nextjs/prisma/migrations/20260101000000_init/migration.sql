-- CreateTable
CREATE TABLE IF NOT EXISTS trades (
    id          SERIAL PRIMARY KEY,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    qty         NUMERIC NOT NULL,
    price       NUMERIC NOT NULL,
    created_at  TIMESTAMPTZ DEFAULT now()
);
