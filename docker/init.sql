CREATE TABLE transactions (
  id          bigserial PRIMARY KEY,
  card_id     int NOT NULL,
  merchant_id int NOT NULL,
  amount      numeric(12,2) NOT NULL,
  status      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE transactions REPLICA IDENTITY FULL;
