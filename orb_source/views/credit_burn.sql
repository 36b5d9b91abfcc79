-- Credits consumed per day (UTC), customer and credit currency: the live ledger's decrement
-- entries, pending ones included (pending_consumed is their part). Decrements are negative
-- in the ledger; consumption is reported positive. Expiries and voids are not consumption.
select
    cast(e.created_at at time zone 'UTC' as date) as day,
    e.customer_id,
    c.name as customer_name,
    e.currency,
    -sum(e.amount) as credits_consumed,
    -sum(case when e.entry_status = 'pending' then e.amount else 0 end) as pending_consumed,
    count(*) as decrements
from {dataset}.credit_ledger_entries e
left join {dataset}.customers c on c.id = e.customer_id
where e.deleted_at is null and e.entry_type = 'decrement'
group by 1, 2, 3, 4
