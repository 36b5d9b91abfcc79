-- Prepaid credit per customer and credit currency, from the live credit blocks. A block
-- counts while it is active, effective and not expired at query time. Blocks carry no
-- currency in Orb: it is taken from the block's ledger entries.
with block_currencies as (
    select credit_block__id as block_id, min(currency) as currency
    from {dataset}.credit_ledger_entries
    where deleted_at is null
    group by credit_block__id
),
blocks as (
    select
        b.customer_id,
        bc.currency,
        b.status,
        b.balance,
        b.expiry_date,
        current_timestamp as as_of,
        b.status = 'active'
            and (b.effective_date is null or b.effective_date <= current_timestamp)
            and (b.expiry_date is null or b.expiry_date > current_timestamp) as usable
    from {dataset}.credit_blocks b
    left join block_currencies bc on bc.block_id = b.id
    where b.deleted_at is null
)
select
    b.customer_id,
    c.name as customer_name,
    b.currency,
    sum(case when b.usable then b.balance else 0 end) as balance,
    sum(case when b.usable and b.expiry_date <= b.as_of + interval '30 days' then b.balance else 0 end)
        as expiring_within_30_days,
    min(case when b.usable and b.balance > 0 then b.expiry_date end) as next_expiry_date,
    count(case when b.usable and b.balance > 0 then 1 end) as active_blocks,
    sum(case when b.status = 'pending_payment' then b.balance else 0 end) as pending_payment_balance,
    max(b.as_of) as as_of
from blocks b
left join {dataset}.customers c on c.id = b.customer_id
group by b.customer_id, c.name, b.currency
